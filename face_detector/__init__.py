"""MediaPipe BlazeFace model files (see README.md in this folder)."""
