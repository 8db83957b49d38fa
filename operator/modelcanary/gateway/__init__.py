"""The local traffic-splitting gateway: an Open Inference Protocol reverse proxy."""
