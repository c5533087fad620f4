namespace Nozoki.Tests;

/// <summary>
/// Every test that starts tracees or nozoki belongs to this collection, so that no two of them run at the same time
/// (xunit.runner.json also disables parallelism).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PtraceCollection : ICollectionFixture<FixtureWarmup>
{
    public const string Name = "ptrace";
}

/// <summary>Created once before the collection's first test: compiles every fixture, in parallel.</summary>
public sealed class FixtureWarmup
{
    public FixtureWarmup() => Helpers.Fixtures.CompileAll();
}
