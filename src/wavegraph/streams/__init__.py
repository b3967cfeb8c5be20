"""wavegraph.streams"""
