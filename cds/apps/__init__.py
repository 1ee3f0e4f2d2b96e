"""The applications on top of the public API: the command line (and later the HTTP service and the web pages). Nothing below imports them."""
