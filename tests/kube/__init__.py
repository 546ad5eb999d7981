"""Tests and test infrastructure for the controller's Kubernetes boundary."""
