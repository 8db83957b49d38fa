"""Alert rules: profiles, named PromQL, the rule generator and Alertmanager routing."""
