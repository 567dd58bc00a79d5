"""edge-sdk: build, deliver and operate models on edge devices."""

__version__ = "0.1.0"
