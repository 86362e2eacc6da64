"""The ``jaxreg demo`` application: one MLP on noisy digits under each regularizer.

Installed with the ``demo`` extra (``pip install 'jaxreg[demo]'``: scikit-learn,
matplotlib, rich). It uses the library only through its public API.
"""
