"""The Flowdeck agent: claims flow runs for its labels and runs them in your infrastructure."""
