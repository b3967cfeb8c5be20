"""Operations as code: the Grafana dashboard (built against Grafana's schema), the check that every
query names a metric wavegraph exports, and the uploader behind ``wavegraph grafana``."""
