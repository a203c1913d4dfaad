"""Face login: enrol and log in with a liveness check and a face match (Flask + SQLAlchemy)."""
