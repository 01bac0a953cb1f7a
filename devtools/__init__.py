"""Development-only tools and test/bench helpers; not part of the installed pipecatapp package."""
