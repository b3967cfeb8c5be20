"""Load and chaos scenarios: `wavegraph loadtest ...` / `wavegraph chaos ...`."""
