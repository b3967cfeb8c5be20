"""``wavegraph run audio``: audio chunks → windows → Whisper → transcripts (decoder, sink, pipeline)."""
