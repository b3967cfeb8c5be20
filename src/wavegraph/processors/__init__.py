"""wavegraph.processors"""
