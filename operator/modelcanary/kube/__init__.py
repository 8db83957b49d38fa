"""Kubernetes: the CRD, the operator and its adapters."""
