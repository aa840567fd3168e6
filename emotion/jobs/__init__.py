"""The jobs of the command line, one module each (predict, webcam, serve, prepare), thin layers over the library."""
