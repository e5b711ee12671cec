"""Explanations: CAM methods, layer search, rendering and faithfulness."""
