"""The Kaggle house-price study (D2L §5.7): ``main.py`` (the command line), ``study.py`` (what it computes),
``answers.py`` (the section's exercises). Run ``python experiments/kaggle_house/main.py --help``."""
