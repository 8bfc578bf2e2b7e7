"""What the notebooks use to teach, apart from the pipeline: the lesson setup, the data
exploration of notebook 01, the plots, the FNet demonstrations and the notebook runner.

Import the module you need (``from pianoacc_utils.course import plotting``).
"""
