"""Infrastructure: files, images, models, executors, the work directory. Imports only core."""
