"""The neuroscience: learning rules, spikes, tasks, reward learning and its environments."""
