"""wavegraph.devservices"""
