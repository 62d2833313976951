# frozen_string_literal: true

require_relative "test_helper"

# The gem's minitest side, on tests/fixtures/ruby/minitest_suite (expected.json lists every
# test's outcome) and on small suites written for one case each.
class MinitestWorkerTest < Minitest::Test
  include GemTest::Workers

  SUITE = GemTest::MINITEST_SUITE
  EXPECTED = GemTest.expected(SUITE)

  def start_suite(*args, **options)
    start("minitest", SUITE, *args, **options)
  end

  def test_every_fixture_test_gets_its_expected_outcome
    # The fixture's own boot, 2 s (the other tests skip it).
    worker = start_suite("test", env: { "CIQ_RUBY_FIXTURE_BOOT_SECONDS" => nil })
    ready = worker.ready
    assert_equal({ "type" => "ready", "protocol" => 1, "framework" => "minitest",
                   "framework_version" => GemTest::MINITEST_VERSION, "tests" => EXPECTED["tests"], "lists" => true }, ready)
    assert_equal EXPECTED["by_test"].keys, worker.list
    # Tests that end the process run in workers of their own, below.
    EXPECTED["by_test"].reject { |_, t| t["process"] }.each do |id, expected|
      assert_equal expected["ciq"], worker.run(id)["outcome"], id
    end
    assert_equal 0, worker.shutdown, worker.stderr
    assert_equal 1, counted("boot.count").size, "the suite booted once for all its tests"
    assert_equal 1, counted("after_run.count").size, "Minitest.after_run hooks ran at shutdown"
  end

  def test_a_test_that_calls_exit_bang_ends_the_process_without_a_result
    worker = start_suite
    worker.ready
    worker.send_message("type" => "run", "id" => "HostileTest#test_crashes")
    assert_nil worker.receive, "EOF where the result would be"
    assert_equal 7, worker.exit_status
    assert_includes worker.stderr, "about to exit! 7"
  end

  def test_a_hanging_test_never_answers_and_its_process_group_can_be_killed
    worker = start_suite
    worker.ready
    worker.send_message("type" => "run", "id" => "HostileTest#test_hangs")
    refute worker.answers_within?(1), "a hanging test answered"
    Process.kill("KILL", -worker.pid)
    assert_equal(-9, worker.exit_status)
  end

  def test_failure_output_has_the_message_location_backtrace_and_captured_output
    worker = start_suite
    worker.ready
    output = worker.run("BasicTest#test_failure_with_output")["output"]
    assert_match(/\AFailure:\nBasicTest#test_failure_with_output \[.*test\/basic_test.rb:22\]:\nexpected the answer to be 42.\nExpected: 42\n  Actual: 41\n/, output)
    assert_includes output, "basic_test.rb:22:in `test_failure_with_output'"
    refute_includes output, "lib/ciq/", "the gem's own frames are cut from backtraces"
    assert_includes output, "----- output -----\nabout to compare 41 with 42\na warning on stderr\n"
    error = worker.run("BasicTest#test_raises_in_the_test")["output"]
    assert_includes error, "Error:\nBasicTest#test_raises_in_the_test"
    assert_includes error, "ArgumentError: bad argument in the test body"
    # A pass's output is not sent (it still went to stderr).
    assert_equal "", worker.run("BasicTest#test_prints_and_passes")["output"]
    assert_equal 0, worker.shutdown
    assert_includes worker.stderr, "stdout-marker"
  end

  def test_errors_in_setup_and_teardown_say_which
    worker = start_suite
    worker.ready
    setup = worker.run("SetupErrorTest#test_never_runs")
    assert_equal "errored", setup["outcome"]
    assert_match(/\AError in setup:\n.*RuntimeError: could not connect to the fake database/m, setup["output"])
    teardown = worker.run("TeardownErrorTest#test_passes_then_teardown_errors")
    assert_match(/\AError in teardown:\n.*could not release the fake lock/m, teardown["output"])
    both = worker.run("TeardownErrorTest#test_fails_then_teardown_errors")
    assert_equal "failed", both["outcome"]
    assert_match(/\AFailure:\n.*the test's own failure.*\nError in teardown:\n.*could not release the fake lock/m, both["output"])
    assert_equal 0, worker.shutdown
  end

  def test_a_skip_gives_its_reason
    worker = start_suite
    worker.ready
    assert_equal "skipped: not supported on this platform", worker.run("BasicTest#test_skipped")["output"]
  end

  def test_unicode_and_undecodable_output
    worker = start_suite
    worker.ready
    output = worker.run("BasicTest#test_unicode_failure")["output"]
    assert_includes output, "\u00fcml\u00e4ut"
    assert_includes output, "caf\u00e9 \u2713 \\xFF", "undecodable bytes are escaped visibly"
  end

  def test_a_flaky_test_fails_then_passes
    worker = start_suite
    worker.ready
    assert_equal "failed", worker.run("FlakyTest#test_fails_once")["outcome"]
    assert_equal "passed", worker.run("FlakyTest#test_fails_once")["outcome"]
  end

  def test_tests_that_attack_stdio_leave_the_protocol_and_the_capture_intact
    worker = start_suite
    worker.ready
    # Twice over, so a message eaten by the stdin test would show as a missing answer; the
    # fork test's child returns into the worker's loop and must not answer for it.
    2.times do
      %w[test_writes_to_stdout test_closes_stdout test_forks test_reads_stdin].each do |name|
        assert_equal "passed", worker.run("HostileTest##{name}")["outcome"], name
      end
    end
    exited = worker.run("HostileTest#test_calls_exit")
    assert_equal "errored", exited["outcome"]
    assert_includes exited["output"], "the test called exit (status 3)"
    # After all that, output is still captured and the worker still serves.
    assert_includes worker.run("BasicTest#test_failure_with_output")["output"], "about to compare 41 with 42"
    assert_equal 0, worker.shutdown
    stderr = worker.stderr
    ["not a protocol line", "\"id\":\"forged\"", "child-on-stdout", "child-output"].each { |marker| assert_includes stderr, marker }
  end

  def test_the_context_a_class_builds_on_first_use_is_built_once_per_worker
    worker = start_suite(env: { "CIQ_RUBY_FIXTURE_CONTEXT_SECONDS" => "0" })
    worker.ready
    %w[test_one test_two test_three].each { |name| assert_equal "passed", worker.run("SlowContextTest##{name}")["outcome"] }
    assert_equal 1, counted("context.count").size
    assert_equal 1, counted("boot.count").size
  end

  def test_next_and_keep_change_nothing_and_nothing_is_kept
    worker = start_suite
    worker.ready
    first = worker.run("BasicTest#test_addition", next_id: "BasicTest#test_string_methods")
    refute first.key?("kept")
    refute worker.run("BasicTest#test_string_methods", keep: true).key?("kept")
    assert_equal({ "type" => "settled" }, worker.settle)
    assert_equal 0, worker.shutdown
  end

  def test_unknown_id_is_errored_and_the_worker_goes_on
    worker = start_suite
    worker.ready
    result = worker.run("BasicTest#test_removed_long_ago")
    assert_equal "errored", result["outcome"]
    assert_includes result["output"], "unknown test id \"BasicTest#test_removed_long_ago\""
    assert_equal "passed", worker.run("BasicTest#test_addition")["outcome"]
    assert_equal 0, worker.shutdown
  end

  def test_minitest_autorun_does_not_run_the_suite_again_at_exit
    worker = start_suite
    worker.ready
    worker.run("BasicTest#test_addition")
    assert_equal 0, worker.shutdown
    assert_equal 1, worker.stderr.scan("# Running:").size, worker.stderr
  end

  def test_name_filters_apply_and_a_filter_that_selects_nothing_is_a_ready_of_zero_tests
    worker = start_suite("-n", "/test_(addition|skipped)/", "-e", "test_skipped")
    assert_equal 1, worker.ready["tests"]
    assert_equal ["BasicTest#test_addition"], worker.list
    assert_equal "errored", worker.run("BasicTest#test_string_methods")["outcome"]
    assert_equal 0, worker.shutdown

    nothing = start_suite("--name", "/no_test_has_this_name/")
    assert_equal 0, nothing.ready["tests"]
    assert_equal [], nothing.list
    assert_equal 0, nothing.shutdown
  end

  def test_the_keep_together_unit_rule_of_the_readme_gives_each_class
    EXPECTED["by_test"].each { |id, test| assert_equal test["unit"], MinitestWorkerTest.unit(id), id }
  end

  # The README's rule: the id up to its first "#test_" or "#bench_", else up to its last "#".
  def self.unit(id)
    at = id.index("#test_") || id.index("#bench_") || id.rindex("#")
    id[0, at]
  end

  # --- Loading -------------------------------------------------------------------------

  def test_load_path_helper_files_directories_and_globs
    dir = write_suite(
      "support/helper.rb" => "HELPER_LOADED = true\n",
      "test/a_test.rb" => "require 'minitest'\nclass ATest < Minitest::Test\n  def test_helper; assert HELPER_LOADED; end\nend\n",
      "test/sub/test_b.rb" => "class BTest < Minitest::Test\n  def test_b; end\nend\n",
      "test/not_a_test_file.rb" => "raise 'not a test file: never loaded'\n",
      "other/c_check.rb" => "class CTest < Minitest::Test\n  def test_c; end\nend\n"
    )
    worker = start("minitest", dir, "-I", "support", "-r", "helper", "test", "other/*.rb")
    worker.ready
    assert_equal ["ATest#test_helper", "BTest#test_b", "CTest#test_c"], worker.list
    assert_equal "passed", worker.run("ATest#test_helper")["outcome"]
    assert_equal 0, worker.shutdown
  end

  def test_a_file_that_does_not_load_is_fatal_naming_it_and_every_other
    dir = write_suite(
      "test/good_test.rb" => "require 'minitest'\nclass GoodTest < Minitest::Test\n  def test_ok; end\nend\n",
      "test/broken_test.rb" => "class BrokenTest < Minitest::Test\n  def test_x\n",
      "test/missing_test.rb" => "require 'ciq_library_that_does_not_exist'\n"
    )
    worker = start("minitest", dir, "test")
    fatal = worker.fatal
    assert_match(/\Aminitest could not load the tests \(2 errors\):/, fatal)
    assert_includes fatal, "error loading test/broken_test.rb:\nSyntaxError"
    assert_includes fatal, "error loading test/missing_test.rb:\nLoadError: cannot load such file -- ciq_library_that_does_not_exist"
    assert_equal 2, worker.wait
  end

  def test_bad_arguments_are_fatal
    {
      ["test/nope_test.rb"] => "minitest: no such test file or directory: test/nope_test.rb",
      ["test/*_nope.rb"] => "minitest: no test files in test/*_nope.rb",
      ["--seed", "abc", "test"] => "minitest usage error: invalid argument: --seed abc",
      ["--no-such-option", "test"] => "minitest usage error: minitest refused the options --no-such-option",
      ["-I"] => "minitest usage error: -I needs a value",
    }.each do |args, message|
      worker = start("minitest", SUITE, *args)
      assert_includes worker.fatal, message, args
      assert_equal 2, worker.wait, args
    end
  end

  def test_an_exit_while_loading_is_fatal
    dir = write_suite("test/exits_test.rb" => "exit 4\n")
    worker = start("minitest", dir)
    assert_equal "test/exits_test.rb called exit (status 4) while loading", worker.fatal
    assert_equal 2, worker.wait
  end

  def test_an_anonymous_class_with_tests_is_fatal
    dir = write_suite("test/anon_test.rb" => "require 'minitest'\nClass.new(Minitest::Test) { def test_x; end }\n")
    worker = start("minitest", dir)
    assert_includes worker.fatal, "an anonymous class"
  end

  def test_ids_escape_control_characters_and_repeats_are_numbered
    dir = write_suite("test/spec_test.rb" => <<~RUBY)
      require "minitest/autorun"
      describe "Twice" do
        it("one") {}
      end
      describe "Twice" do
        it("one") {}
      end
      describe "Lines" do
        it("two\\nlines") {}
      end
    RUBY
    worker = start("minitest", dir)
    worker.ready
    assert_equal ["Twice#test_0001_one", "Twice#test_0001_one (2)", "Lines#test_0001_two\\nlines"], worker.list
    assert_equal "passed", worker.run("Lines#test_0001_two\\nlines")["outcome"]
    assert_equal "passed", worker.run("Twice#test_0001_one (2)")["outcome"]
  end

  def test_seed_is_honoured_as_minitest_honours_it
    dir = write_suite("test/rand_test.rb" => <<~RUBY)
      require "minitest/autorun"
      class RandTest < Minitest::Test
        def test_rand
          File.write(ENV.fetch("RAND_OUT"), rand(1_000_000).to_s)
        end
      end
    RUBY
    draws = [4242, 4242, 4243].each_with_index.map do |seed, n|
      out = File.join(@state, "rand#{n}")
      worker = start("minitest", dir, "--seed", seed.to_s, env: { "RAND_OUT" => out })
      worker.ready
      worker.run("RandTest#test_rand")
      worker.shutdown
      assert_includes worker.stderr, "Run options: --seed #{seed}"
      File.read(out)
    end
    assert_equal draws[0], draws[1], "the same seed draws the same numbers"
    refute_equal draws[0], draws[2]
  end

  def test_a_failing_after_run_hook_exits_1_at_shutdown
    dir = write_suite("test/hook_test.rb" => <<~RUBY)
      require "minitest/autorun"
      Minitest.after_run { raise "after_run went wrong" }
      class HookTest < Minitest::Test
        def test_ok; end
      end
    RUBY
    worker = start("minitest", dir)
    worker.ready
    assert_equal "passed", worker.run("HookTest#test_ok")["outcome"]
    assert_equal 1, worker.shutdown
    assert_includes worker.stderr, "ciq: a Minitest.after_run hook failed: RuntimeError: after_run went wrong"
  end
end
