"""Speed and memory of serstream, each figure beside a reference measured in the same run."""
