"""The single-machine stack: API + pumps + process dispatcher in one command (`make up`)."""
