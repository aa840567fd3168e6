"""The pieces every path shares: face detection, the one path from a picture to its faces (faces, frames), model files and their checks, precision, drawing, records."""
