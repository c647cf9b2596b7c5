"""Prediction on images and videos: media I/O, tracking and smoothing."""
