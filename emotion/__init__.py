"""Facial emotion recognition with Keras: the library (`EmotionRecognizer`, docs/api.md) and the jobs beneath the
command line `emotion_recognition.py` (docs/design.md, "Where the code lives").

    from emotion import EmotionRecognizer
    faces = EmotionRecognizer().analyze("photo.jpg")   # [Face(box=(x, y, w, h), emotion='happy', ...)]

The names in __all__ are the public API; everything else may change. `import emotion` is light: TensorFlow is
imported when a recognizer is built.
"""

from emotion.errors import ArgumentError, EmotionError, ImageError, ModelError

__all__ = ["EmotionRecognizer", "Face", "EmotionError", "ImageError", "ModelError", "ArgumentError"]


def __getattr__(name):
    """EmotionRecognizer and Face, imported on first use (OpenCV, NumPy and the detector modules with them)."""
    if name in ("EmotionRecognizer", "Face"):
        from emotion import recognizer
        return getattr(recognizer, name)
    raise AttributeError(f"module 'emotion' has no attribute {name!r}")
