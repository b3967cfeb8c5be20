"""wavegraph.sinks"""
