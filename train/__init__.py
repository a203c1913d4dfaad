"""Training side: face gathering, Keras models, training runs, metrics and reports. May import runtime."""
