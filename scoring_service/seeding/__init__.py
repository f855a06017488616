"""Reference data of the 2018 notice and the demo round."""
