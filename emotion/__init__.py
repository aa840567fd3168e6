"""The jobs around emotion_recognition.py, one module each (docs/design.md, "Where the code lives")."""
