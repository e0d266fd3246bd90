"""Screens of the console: the pod browser, the attached pod, help."""
