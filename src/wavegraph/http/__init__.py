"""wavegraph.http"""
