"""imgrec: an image-recognition workbench. The app, the API and the CLI are thin faces on this package.

Importing the package is cheap: TensorFlow and Keras load only in the modules that need them.
"""

__version__ = "0.1.0"
