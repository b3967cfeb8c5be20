"""wavegraph: real-time enrichment of audio and graph-edge events on Apache Kafka."""

__version__ = "0.1.0"
