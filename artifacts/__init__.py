"""Shipped trained and exported models and their manifest.json."""
