"""Run the batched-decoding benchmark (the same as `decodelab bench`); pass --help for options."""

from decodelab.cli.main import bench

if __name__ == "__main__":
    bench()
