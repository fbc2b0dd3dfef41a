"""One file per experiment; `launch.py --experiment=NAME` calls NAME.get_config()."""
