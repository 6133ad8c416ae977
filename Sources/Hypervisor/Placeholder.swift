public enum HypervisorPlaceholder {}
