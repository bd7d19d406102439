"""What tasks do: Python callables and shell commands (containers and sensors come later)."""
