"""The configuration files, shipped as the package ``prtr_tf.configs`` (setup.py maps
this folder to it), so that `prtr_tf.config.load_config` finds them by name after a
plain ``pip install``. Each ``*.py`` here defines ``get_config()``; copy one to start
a configuration of your own and pass its path."""
