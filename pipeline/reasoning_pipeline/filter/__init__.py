"""Rejection sampling: keep a trace only when its answer is right (math) or its code passes every test."""
