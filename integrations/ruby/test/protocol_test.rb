# frozen_string_literal: true

require_relative "test_helper"

# Protocol details that hold for both frameworks.
class ProtocolTest < Minitest::Test
  include GemTest::Workers

  SUITES = {
    "minitest" => [GemTest::MINITEST_SUITE, "BasicTest#test_addition"],
    "rspec" => [GemTest::RSPEC_SUITE, "./spec/basic_spec.rb # Basic adds"],
  }.freeze

  def each_framework
    SUITES.each do |framework, (dir, passing)|
      worker = start(framework, dir)
      worker.ready
      yield worker, passing, framework
    end
  end

  def test_unknown_message_types_fields_and_blank_lines_are_ignored
    each_framework do |worker, passing|
      worker.send_message("type" => "hello-from-the-future", "payload" => [1, 2])
      worker.send_raw("\n  \n")
      worker.send_message("type" => "run", "id" => passing, "priority" => 7)
      result = worker.receive
      assert_equal %w[result passed], [result["type"], result["outcome"]]
      assert_equal 0, worker.shutdown
    end
  end

  def test_eof_on_stdin_ends_the_session_with_exit_0
    each_framework do |worker, passing|
      worker.run(passing)
      worker.close_stdin
      assert_equal 0, worker.wait
    end
  end

  def test_a_line_that_is_not_a_json_object_is_a_protocol_error
    ["this is not json\n", "[1, 2]\n", "{\"type\":\"run\",\"id\":7}\n", "\xFF\xFE\n".b].each do |line|
      each_framework do |worker, _, framework|
        worker.send_raw(line)
        assert_equal 3, worker.wait, [framework, line]
        assert_includes worker.stderr, "ciq protocol error", [framework, line]
      end
    end
  end

  def test_a_forked_child_that_outlives_the_worker_does_not_hold_the_channel
    # Without the fork guard the child keeps a copy of the pipes: ciq would see no EOF for
    # the crash below until the child exits, 300 s later.
    dir = write_suite("test/fork_test.rb" => <<~RUBY)
      require "minitest/autorun"
      class ForkTest < Minitest::Test
        def test_leaves_a_child
          fork { sleep 300 }
          spawn("sleep", "300")
        end

        def test_crashes
          exit!(5)
        end
      end
    RUBY
    worker = start("minitest", dir)
    worker.ready
    assert_equal "passed", worker.run("ForkTest#test_leaves_a_child")["outcome"]
    worker.send_message("type" => "run", "id" => "ForkTest#test_crashes")
    assert worker.answers_within?(30), "no EOF while the forked child lives"
    assert_nil worker.receive
    assert_equal 5, worker.exit_status
  end

  def test_preflight_says_what_is_installed
    %w[minitest rspec].each do |framework|
      out = GemTest.run!(GemTest.env, "ruby", "-rciq/preflight", "-e", "Ciq.preflight", "--", framework)
      assert_match(/\Aciq-ruby \d+\.\d+\.\d+ protocol 1 #{framework} \d+\.\d+\.\d+\n\z/, out)
    end
    _, err, status = Open3.capture3(GemTest.env, "ruby", "-rciq/preflight", "-e", "Ciq.preflight", "--", "nose")
    assert_equal [2, "ciq-ruby: unknown framework \"nose\": give minitest or rspec\n"], [status.exitstatus, err]
    # The framework missing: Ruby without its gems, but with the gem's lib dir.
    lib = Dir.glob(File.join(GemTest.gem_home, "gems", "ciq-ruby-*", "lib")).first
    _, err, status = Open3.capture3(GemTest.env, "ruby", "--disable-gems", "-I", lib, "-rciq/preflight", "-e", "Ciq.preflight", "--", "rspec")
    assert_equal 2, status.exitstatus
    assert_match(/\Aciq-ruby: rspec cannot be loaded \(cannot load such file -- rspec\/core\): add it to the suite's Gemfile or install it\n\z/, err)
    # Without the gem: Ruby's own LoadError, exit 1.
    _, err, status = Open3.capture3(GemTest.env("GEM_HOME" => Dir.mktmpdir("ciq-no-gems").tap { |d| @dirs << d }),
                                    "ruby", "-rciq/preflight", "-e", "Ciq.preflight", "--", "rspec")
    assert_equal 1, status.exitstatus
    assert_includes err, "cannot load such file -- ciq/preflight"
  end

  def test_without_the_gem_the_launch_fails_before_ready_naming_it
    worker = start("rspec", GemTest::RSPEC_SUITE, env: { "GEM_HOME" => Dir.mktmpdir("ciq-no-gems").tap { |d| @dirs << d } })
    assert_nil worker.receive
    assert_equal 1, worker.exit_status
    assert_includes worker.stderr, "cannot load such file -- ciq/rspec"
  end
end
