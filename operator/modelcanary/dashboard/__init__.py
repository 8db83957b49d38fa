"""What a person watches of rollouts: a live web page and Grafana dashboards."""
