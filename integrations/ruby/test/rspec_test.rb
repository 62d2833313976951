# frozen_string_literal: true

require_relative "test_helper"

# The gem's RSpec side, on tests/fixtures/ruby/rspec_suite (expected.json lists every
# example's outcome) and on small suites written for one case each.
class RSpecWorkerTest < Minitest::Test
  include GemTest::Workers

  SUITE = GemTest::RSPEC_SUITE
  EXPECTED = GemTest.expected(SUITE)
  SLOW = "./spec/context_spec.rb # Slow context sees the resource"
  SLOW2 = "./spec/context_spec.rb # Slow context shares the resource"
  NESTED = "./spec/context_spec.rb # Slow context nested sees the outer resource"
  AFTER_FAILS = "./spec/hooks_spec.rb # After context fails passes before its group's teardown"
  ADDS = "./spec/basic_spec.rb # Basic adds"

  def start_suite(*args, **options)
    start("rspec", SUITE, *args, **options)
  end

  def rspec_version
    GemTest.run!({}, "ruby", "-rrspec/core", "-e", "print RSpec::Core::Version::STRING")
  end

  def test_every_fixture_example_gets_its_expected_outcome
    # The fixture's own boot, 2 s (the other tests skip it).
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_CONTEXT_SECONDS" => "0", "CIQ_RUBY_FIXTURE_BOOT_SECONDS" => nil })
    ready = worker.ready
    assert_equal({ "type" => "ready", "protocol" => 1, "framework" => "rspec",
                   "framework_version" => rspec_version, "tests" => EXPECTED["tests"], "lists" => true }, ready)
    # .rspec's --tag ~wip leaves the wip example out.
    assert_equal EXPECTED["by_test"].keys, worker.list
    EXPECTED["by_test"].reject { |_, t| t["process"] }.each do |id, expected|
      assert_equal expected["ciq"], worker.run(id)["outcome"], id
    end
    assert_equal 0, worker.shutdown, worker.stderr
    assert_equal 1, counted("boot.count").size, "the suite booted once for all its examples"
    assert_equal ["before-suite", "after-suite"], counted("suite.log").map { |line| line.split.first }
  end

  def test_an_example_that_calls_exit_bang_ends_the_process_without_a_result
    worker = start_suite
    worker.ready
    worker.send_message("type" => "run", "id" => "./spec/hostile_spec.rb # Hostile crashes")
    assert_nil worker.receive
    assert_equal 7, worker.exit_status
    assert_includes worker.stderr, "about to exit! 7"
  end

  def test_a_hanging_example_never_answers_and_its_process_group_can_be_killed
    worker = start_suite
    worker.ready
    worker.send_message("type" => "run", "id" => "./spec/hostile_spec.rb # Hostile hangs")
    refute worker.answers_within?(1), "a hanging example answered"
    Process.kill("KILL", -worker.pid)
    assert_equal(-9, worker.exit_status)
  end

  def test_outputs_of_failures_skips_and_pending
    worker = start_suite
    worker.ready
    failure = worker.run("./spec/basic_spec.rb # Basic fails with output")["output"]
    assert_match(/\ABasic fails with output\nFailure\/Error: expect\(41\).to eq\(42\)\n\n  expected: 42\n       got: 41\n/, failure)
    assert_includes failure, "# ./spec/basic_spec.rb:20:in `block (2 levels) in <top (required)>'"
    refute_includes failure, "lib/ciq/", "the gem's own frames are cut from backtraces"
    assert_includes failure, "----- output -----\nabout to compare 41 with 42\na warning on stderr\n"
    {
      "Basic is skipped by metadata" => "skipped: not supported on this platform",
      "Basic is disabled with xit" => "skipped: Temporarily skipped with xit",
      "Basic is skipped at run time" => "skipped: feature flag is off",
      "Basic is pending and fails as expected" => "pending: known bug #12",
    }.each { |name, output| assert_equal output, worker.run("./spec/basic_spec.rb # #{name}")["output"], name }
    fixed = worker.run("./spec/basic_spec.rb # Basic is pending but passes")
    assert_includes fixed["output"], "Expected pending 'should fail until #34 is fixed' to fail. No error was raised."
    unicode = worker.run("./spec/basic_spec.rb # Basic fails with unicode output")["output"]
    assert_includes unicode, "\u00fcml\u00e4ut"
    assert_includes unicode, "caf\u00e9 \u2713"
    assert_equal 0, worker.shutdown
  end

  def test_tests_that_attack_stdio_leave_the_protocol_and_the_capture_intact
    worker = start_suite
    worker.ready
    2.times do
      ["writes to stdout", "closes stdout", "forks", "reads stdin"].each do |name|
        assert_equal "passed", worker.run("./spec/hostile_spec.rb # Hostile #{name}")["outcome"], name
      end
    end
    exited = worker.run("./spec/hostile_spec.rb # Hostile calls exit")
    assert_equal "errored", exited["outcome"]
    assert_includes exited["output"], "the test called exit (status 3)"
    assert_includes worker.run("./spec/basic_spec.rb # Basic fails with output")["output"], "about to compare 41 with 42"
    assert_equal 0, worker.shutdown
    ["not a protocol line", "\"id\":\"forged\"", "child-on-stdout", "child-output"].each { |marker| assert_includes worker.stderr, marker }
  end

  def test_a_flaky_example_fails_then_passes
    worker = start_suite
    worker.ready
    assert_equal "failed", worker.run("./spec/flaky_spec.rb # Flaky fails once")["outcome"]
    assert_equal "passed", worker.run("./spec/flaky_spec.rb # Flaky fails once")["outcome"]
  end

  def test_unknown_id_is_errored_and_the_worker_goes_on
    worker = start_suite
    worker.ready
    result = worker.run("./spec/basic_spec.rb # Basic was removed")
    assert_equal "errored", result["outcome"]
    assert_includes result["output"], "unknown test id \"./spec/basic_spec.rb # Basic was removed\""
    assert_equal "passed", worker.run(ADDS)["outcome"]
    assert_equal 0, worker.shutdown
  end

  def test_the_keep_together_unit_rule_of_the_readme_gives_each_file
    EXPECTED["by_test"].each { |id, test| assert_equal test["unit"], id[0, id.index(" # ")], id }
  end

  # --- Context and suite hooks, next/keep/settle -------------------------------------------

  def test_keep_leaves_a_group_up_for_the_next_example_in_it
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_CONTEXT_SECONDS" => "0" })
    worker.ready
    first = worker.run(SLOW, keep: true)
    assert_equal [true, "passed"], [first["kept"], first["outcome"]]
    assert_equal true, worker.run(SLOW2, keep: true)["kept"]
    assert_equal "passed", worker.run(NESTED, keep: true)["outcome"]
    assert_equal ["Slow context", "Slow context nested"], counted("context.count").map { |line| line.sub(/ \d+\z/, "") }
    refute worker.settle.key?("previous")
    # Everything was torn down: the group is set up again, and so is the suite.
    assert_equal "passed", worker.run(SLOW)["outcome"]
    assert_equal 3, counted("context.count").size
    assert_equal %w[before-suite after-suite before-suite], counted("suite.log").map { |line| line.split.first }
    assert_equal 0, worker.shutdown
  end

  def test_without_next_or_keep_a_group_is_torn_down_after_each_example
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_CONTEXT_SECONDS" => "0" })
    worker.ready
    refute worker.run(SLOW).key?("kept")
    assert_equal "passed", worker.run(SLOW2)["outcome"]
    assert_equal 2, counted("context.count").size
    # The suite stays up until settle or shutdown.
    assert_equal ["before-suite"], counted("suite.log").map { |line| line.split.first }
    assert_equal 0, worker.shutdown
  end

  def test_next_keeps_what_both_examples_share
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_CONTEXT_SECONDS" => "0" })
    worker.ready
    refute worker.run(SLOW, next_id: NESTED).key?("kept")
    assert_equal "passed", worker.run(NESTED, next_id: SLOW2)["outcome"]
    assert_equal "passed", worker.run(SLOW2)["outcome"]
    assert_equal 2, counted("context.count").size
    # A next id the worker does not know counts as none: the group is torn down.
    worker.run(SLOW, next_id: "./spec/context_spec.rb # gone")
    worker.run(SLOW2)
    assert_equal 4, counted("context.count").size
    assert_equal 0, worker.shutdown
  end

  def test_a_failing_after_context_hook_errors_its_own_example_when_not_kept
    worker = start_suite
    worker.ready
    result = worker.run(AFTER_FAILS)
    assert_equal "errored", result["outcome"]
    assert_includes result["output"], "An error occurred in an `after(:context)` hook."
    assert_includes result["output"], "after(:context) could not release"
  end

  def test_a_failing_after_context_hook_of_a_kept_group_is_the_kept_examples_previous
    worker = start_suite
    worker.ready
    # The likely next example (the next in listing order) is in another group: the group is
    # torn down at once, inside the result.
    kept = worker.run(AFTER_FAILS, keep: true)
    assert_equal "errored", kept["outcome"]
    assert_equal true, kept["kept"]

    dir = write_suite(".rspec" => "", "spec/a_spec.rb" => <<~RUBY)
      RSpec.describe "A" do
        after(:context) { raise "after(:context) went wrong" }
        it("one") {}
        it("two") {}
      end
      RSpec.describe("B") { it("three") {} }
    RUBY
    %w[run settle].each do |then_|
      worker = start("rspec", dir)
      worker.ready
      first = worker.run("./spec/a_spec.rb # A one", keep: true)
      assert_equal ["passed", true], [first["outcome"], first["kept"]]
      answer = then_ == "run" ? worker.run("./spec/a_spec.rb # B three") : worker.settle
      assert_equal "passed", answer["outcome"] if then_ == "run"
      previous = answer.fetch("previous")
      assert_equal ["./spec/a_spec.rb # A one", "errored"], [previous["id"], previous["outcome"]]
      assert_includes previous["output"], "after(:context) went wrong"
      assert_equal 0, worker.shutdown
    end
  end

  def test_a_failing_after_suite_hook_at_settle_errors_the_kept_example
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_FAIL_AFTER_SUITE" => "1" })
    worker.ready
    assert_equal true, worker.run(ADDS, keep: true)["kept"]
    previous = worker.settle.fetch("previous")
    assert_equal [ADDS, "errored"], [previous["id"], previous["outcome"]]
    assert_includes previous["output"], "An error occurred in an `after(:suite)` hook."
    assert_includes previous["output"], "after(:suite) went wrong"
  end

  def test_a_failing_after_suite_hook_at_shutdown_exits_1
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_FAIL_AFTER_SUITE" => "1" })
    worker.ready
    worker.run(ADDS)
    assert_equal 1, worker.shutdown
    assert_includes worker.stderr, "after(:suite) went wrong"
  end

  def test_a_failing_before_suite_hook_errors_every_example_until_settle
    dir = write_suite(".rspec" => "", "spec/a_spec.rb" => <<~RUBY)
      RSpec.configure do |config|
        config.before(:suite) do
          tries = File.exist?(ENV["TRIES"]) ? File.read(ENV["TRIES"]).to_i : 0
          File.write(ENV["TRIES"], (tries + 1).to_s)
          raise "before(:suite) could not connect" if tries.zero?
        end
      end
      RSpec.describe("A") { it("one") {} }
    RUBY
    tries = File.join(@state, "tries")
    worker = start("rspec", dir, env: { "TRIES" => tries })
    worker.ready
    2.times do
      result = worker.run("./spec/a_spec.rb # A one")
      assert_equal "errored", result["outcome"]
      assert_includes result["output"], "before(:suite) could not connect"
    end
    assert_equal "1", File.read(tries), "a failed before(:suite) is not retried for each example"
    worker.settle
    assert_equal "passed", worker.run("./spec/a_spec.rb # A one")["outcome"]
    assert_equal 0, worker.shutdown
  end

  def test_a_before_context_failure_or_skip_applies_to_every_example_of_the_group
    worker = start_suite
    worker.ready
    first = worker.run("./spec/hooks_spec.rb # Before context fails never runs", keep: true)
    assert_equal "errored", first["outcome"]
    assert_includes first["output"], "a before(:context) hook of \"Before context fails\" failed"
    assert_includes first["output"], "before(:context) could not connect"
    assert_equal "errored", worker.run("./spec/hooks_spec.rb # Before context fails never runs either")["outcome"]
    assert_equal "skipped: the whole group is skipped", worker.run("./spec/hooks_spec.rb # Context skipped is skipped by its group")["output"]
    assert_equal 0, worker.shutdown
  end

  # --- Options and loading -----------------------------------------------------------------

  def test_tag_selects_and_a_tag_that_selects_nothing_is_a_ready_of_zero_tests
    worker = start_suite("--tag", "slow")
    assert_equal 1, worker.ready["tests"]
    assert_equal ["./spec/basic_spec.rb # Basic is tagged slow"], worker.list
    assert_equal "errored", worker.run(ADDS)["outcome"]
    assert_equal 0, worker.shutdown

    nothing = start_suite("--tag", "no_example_has_this_tag")
    assert_equal 0, nothing.ready["tests"]
    assert_equal [], nothing.list
    assert_equal 0, nothing.shutdown
  end

  def test_files_and_example_filters_apply
    worker = start_suite("spec/context_spec.rb", "-e", "nested")
    worker.ready
    assert_equal [NESTED], worker.list
  end

  def test_seed_is_honoured_as_rspec_honours_it
    dir = write_suite(".rspec" => "--require spec_helper\n", "spec/spec_helper.rb" => <<~RUBY, "spec/rand_spec.rb" => <<~SPEC)
      RSpec.configure { |config| Kernel.srand config.seed }
    RUBY
      RSpec.describe("Rand") do
        it("draws") { File.write(ENV.fetch("RAND_OUT"), "\#{RSpec.configuration.seed} \#{rand(1_000_000)}") }
      end
    SPEC
    values = 2.times.map do |n|
      out = File.join(@state, "rand#{n}")
      worker = start("rspec", dir, "--seed", "4242", env: { "RAND_OUT" => out })
      worker.ready
      worker.run("./spec/rand_spec.rb # Rand draws")
      worker.shutdown
      File.read(out)
    end
    assert_equal values.first, values.last
    assert values.first.start_with?("4242 "), values.first
  end

  def test_a_spec_file_that_does_not_load_is_fatal_naming_it
    dir = write_suite(".rspec" => "", "spec/good_spec.rb" => "RSpec.describe('G') { it('ok') {} }\n",
                      "spec/broken_spec.rb" => "RSpec.describe('B') do\n  it('x') {\n")
    worker = start("rspec", dir)
    fatal = worker.fatal
    assert_match(/\Arspec could not load the specs \(1 error\):/, fatal)
    assert_includes fatal, "An error occurred while loading ./spec/broken_spec.rb."
    assert_equal 2, worker.wait
  end

  def test_a_spec_helper_that_raises_is_fatal
    dir = write_suite(".rspec" => "--require spec_helper\n", "spec/spec_helper.rb" => "raise 'no database'\n",
                      "spec/a_spec.rb" => "RSpec.describe('A') { it('ok') {} }\n")
    worker = start("rspec", dir)
    assert_includes worker.fatal, "no database"
    assert_equal 2, worker.wait
  end

  def test_options_that_do_not_run_examples_are_fatal
    {
      ["--dry-run"] => "rspec usage error: --dry-run reports every example as passed without running it",
      ["--version"] => "rspec usage error: --help, --version, --init and --bisect do not run examples",
      ["--no-such-option"] => "rspec stopped while loading the tests (invalid option: --no-such-option",
    }.each do |args, message|
      worker = start_suite(*args)
      assert_includes worker.fatal, message, args
      assert_equal 2, worker.wait, args
    end
  end

  def test_rspec_autorun_does_not_run_the_suite_again_at_exit
    dir = write_suite(".rspec" => "", "spec/a_spec.rb" => <<~RUBY)
      require "rspec/autorun"
      RSpec.describe("A") { it("ok") { File.write(ENV.fetch("RUNS"), "ran\\n", mode: "a") } }
    RUBY
    runs = File.join(@state, "runs")
    worker = start("rspec", dir, env: { "RUNS" => runs })
    worker.ready
    worker.run("./spec/a_spec.rb # A ok")
    assert_equal 0, worker.shutdown
    assert_equal ["ran"], File.readlines(runs, chomp: true)
    assert_equal 1, worker.stderr.scan(/^\d+ examples?, /).size, worker.stderr
  end

  # --- Ids -------------------------------------------------------------------------------

  SPEC_BEFORE = <<~RUBY
    RSpec.describe "Calculator" do
      it("adds") { expect(1 + 1).to eq(2) }
      it("subtracts") { expect(2 - 1).to eq(1) }
    end
  RUBY
  SPEC_AFTER = <<~RUBY
    RSpec.describe "Calculator" do
      it("multiplies") { expect(2 * 2).to eq(4) }
      it("adds") { expect(1 + 1).to eq(2) }
      it("subtracts") { expect(2 - 1).to eq(1) }
    end
  RUBY

  # RSpec's own example ids (./spec/calc_spec.rb[1:2]) are positions: a spec added above an
  # example gives its id to another example, so a quarantine entry, a timing or a retry would
  # follow the wrong test. The gem's ids (file and full description) stay with their example.
  def test_rspec_positional_ids_move_to_another_example_when_one_is_added_above_and_ours_do_not
    dir = write_suite(".rspec" => "", "spec/calc_spec.rb" => SPEC_BEFORE)
    positional = lambda do
      json = GemTest.run!({ "RUBYOPT" => nil }, "rspec", "--dry-run", "--format", "json", chdir: dir)
      JSON.parse(json[/\{.*\}/m])["examples"].to_h { |e| [e["id"], e["description"]] }
    end
    ours = lambda do
      worker = start("rspec", dir)
      worker.ready
      worker.list.tap { worker.shutdown }
    end
    before_positional = positional.call
    before_ours = ours.call
    File.write(File.join(dir, "spec/calc_spec.rb"), SPEC_AFTER)
    after_positional = positional.call
    after_ours = ours.call

    assert_equal "subtracts", before_positional["./spec/calc_spec.rb[1:2]"]
    assert_equal "adds", after_positional["./spec/calc_spec.rb[1:2]"], "the positional id now names another example"
    assert_equal ["./spec/calc_spec.rb # Calculator adds", "./spec/calc_spec.rb # Calculator subtracts"], before_ours
    assert_equal before_ours, after_ours - ["./spec/calc_spec.rb # Calculator multiplies"]
  end

  def test_repeated_descriptions_and_control_characters
    dir = write_suite(".rspec" => "", "spec/d_spec.rb" => <<~RUBY)
      RSpec.describe "D" do
        it("x") {}
        it("x (2)") {}
        it("x") {}
        it("two\\nlines") {}
        it { expect(1).to eq(1) }
      end
    RUBY
    worker = start("rspec", dir)
    worker.ready
    ids = ["./spec/d_spec.rb # D x", "./spec/d_spec.rb # D x (2)", "./spec/d_spec.rb # D x (3)",
           "./spec/d_spec.rb # D two\\nlines", "./spec/d_spec.rb # D"]
    assert_equal ids, worker.list
    ids.each { |id| assert_equal "passed", worker.run(id)["outcome"], id }
    # Running an example again (a retry) starts it afresh, and its id stays.
    assert_equal "passed", worker.run("./spec/d_spec.rb # D")["outcome"]
    assert_equal ids, worker.list
  end
end
