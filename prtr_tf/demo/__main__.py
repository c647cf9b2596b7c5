"""`python -m prtr_tf.demo` (`make demo`)."""
from prtr_tf.demo.run import main

if __name__ == "__main__":
    main()
