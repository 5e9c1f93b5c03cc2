"""One page per step of the flow: Data, Tasks, Algorithm, Train, Try it, Runs, Export."""
