"""ember.compiler: op definitions, graph IR, passes, autodiff, kernel IR and code generation.

It never imports the frontend, so a graph built by any means compiles the same way.
"""
