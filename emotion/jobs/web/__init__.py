"""The web page of `python emotion_recognition.py serve` (server.py, and the page itself under static/)."""
