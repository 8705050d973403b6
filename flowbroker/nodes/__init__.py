"""The node implementations, one module per family (the engine maps dojot node types to them)."""
