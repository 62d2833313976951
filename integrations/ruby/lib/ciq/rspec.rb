# frozen_string_literal: true

require "rspec/core"
require_relative "server"
require_relative "ids"

module Ciq
  # RSpec over ciq's persistent protocol. ciq starts
  #
  #   ruby -rciq/rspec -e Ciq::RSpec.serve -- [rspec options and files, as for `rspec`]
  #
  # RSpec parses the arguments with .rspec, ~/.rspec, .rspec-local and SPEC_OPTS, loads the
  # spec files, and the gem runs the examples ciq sends one at a time, keeping before(:context)
  # state up while consecutive examples share their group, and before(:suite) state until
  # `settle` or shutdown.
  module RSpec
    def self.serve(argv = ARGV)
      Server.serve(Adapter, argv)
    end

    # { id => example } for the examples RSpec loaded and its filters (--tag, -e, file:line,
    # ...) selected, in declaration order (a group's examples, then its child groups'),
    # whatever --order says: ciq orders the tests itself, and every worker must list the same
    # ids in the same order. An id is the example's file and full description (README, "Test
    # ids"), taken at load: RSpec rewrites the description of an example without one after
    # running it.
    def self.examples(world = ::RSpec.world)
      examples = []
      walk = lambda do |groups|
        groups.each do |group|
          examples.concat(group.filtered_examples)
          walk.call(group.children)
        end
      end
      walk.call(world.example_groups)
      ids = examples.map do |example|
        file = example.metadata[:rerun_file_path] || example.file_path # the former since RSpec 3.6
        Ids.escape("#{file} # #{example.metadata[:full_description].to_s.strip}")
      end
      Ids.unique(ids).zip(examples).to_h
    end

    # Keeps what RSpec reports outside examples (a spec file that does not load, a failing
    # after(:context) or suite hook), which RSpec otherwise only prints. Prepended to
    # RSpec::Core::Reporter.
    module NonExampleErrors
      @errors = []

      # What was reported while the block ran, as RSpec prints it.
      def self.during
        start = @errors.size
        yield
        @errors.slice!(start..)
      end

      def self.record(text)
        @errors << text
      end

      def notify_non_example_exception(exception, context_description)
        example = ::RSpec::Core::Example.new(::RSpec::Core::AnonymousExampleGroup, context_description, {})
        presenter = ::RSpec::Core::Formatters::ExceptionPresenter.new(exception, example, indentation: 0)
        NonExampleErrors.record(presenter.fully_formatted(nil, ::RSpec::Core::Notifications::NullColorizer).sub(/\A\s*\n/, ""))
        super
      end
    end

    # RSpec runs its default path (spec/) when given no files only when it was started as the
    # `rspec` command, which it tells from $0 ("-e" here). Prepended to RSpec::Core::Configuration.
    module AsTheRSpecCommand
      private

      def command
        "rspec"
      end
    end

    # Loads the specs and runs their examples for Ciq::Server.
    class Adapter
      def self.framework
        "rspec"
      end

      def framework
        self.class.framework
      end

      def framework_version
        ::RSpec::Core::Version::STRING
      end

      attr_reader :ids

      def initialize(argv)
        # A spec file requiring rspec/autorun would run the suite again at exit.
        ::RSpec::Core::Runner.disable_autorun!
        ::RSpec::Core::Reporter.prepend(NonExampleErrors)
        ::RSpec::Core::Configuration.prepend(AsTheRSpecCommand)
        options = ::RSpec::Core::ConfigurationOptions.new(argv)
        refuse(options.options)
        @config = ::RSpec.configuration
        @world = ::RSpec.world
        # Backtraces end at the test: below it are the gem's loop and the `ruby -e` launcher.
        @config.backtrace_exclusion_patterns << /\A#{Regexp.escape(File.expand_path("..", __dir__))}/ << /\A-e:\d/
        # RSpec's own output (progress, summary) goes to the gem's copy of stderr.
        errors = NonExampleErrors.during { ::RSpec::Core::Runner.new(options).setup(Ciq.stderr, Ciq.stderr) }
        check_loaded(errors)
        @examples = RSpec.examples(@world)
        @ids = @examples.keys
        @following = @ids.each_cons(2).to_h
        @reporter = @config.reporter
        @reporter.start(@ids.size)
        @entered = [] # [group, nil | [:error | :skip, exception]], outermost first
        @suite_up = false
        @suite_error = nil
        @kept = nil
      end

      # A test that is not `id`'s (or any test, for an unknown id) may have left groups up.
      def prepare(id)
        example = @examples[id]
        charge(leave_to(example ? chain(example) : []))
      end

      def execute(id, next_id, keep)
        example = @examples.fetch(id)
        outcome, output = run(example)
        # Keep up the groups the next test shares: the one ciq named, or under `keep` the one
        # after this in listing order (ciq hands a file's examples out together). The suite
        # stays up either way: every test shares it.
        after = next_id ? @examples[next_id] : (keep && @examples[@following[id]])
        errors = leave_to(after ? common(chain(example), chain(after)) : [])
        unless errors.empty?
          outcome = "errored" unless outcome == "failed"
          output += "#{output.empty? ? '' : "\n"}#{errors.join("\n")}"
        end
        @kept = id if keep
        [outcome, output, keep]
      end

      # Everything goes, before(:suite) state included; a test that comes later sets it up again.
      def settle
        charge(leave_to([]) + leave_suite)
      end

      def finish
        errors = leave_to([]) + leave_suite
        errors.each { |error| Ciq.stderr.puts "ciq: tearing down at shutdown failed:\n#{error}" }
        @reporter.finish
        errors.empty? ? Server::EXIT_OK : Server::EXIT_TEARDOWN_FAILED
      end

      private

      # Options that make rspec do something else than run the examples it loaded.
      def refuse(options)
        if options[:runner]
          raise Fatal, "rspec usage error: --help, --version, --init and --bisect do not run examples, so they cannot serve ciq"
        end
        return unless options[:dry_run]

        raise Fatal, "rspec usage error: --dry-run reports every example as passed without running it"
      end

      def check_loaded(errors)
        quitting = @world.wants_to_quit || (@world.respond_to?(:rspec_is_quitting) && @world.rspec_is_quitting)
        unless errors.empty?
          count = errors.size == 1 ? "1 error" : "#{errors.size} errors"
          raise Fatal, "rspec could not load the specs (#{count}):\n\n#{errors.join("\n")}"
        end
        raise Fatal, "rspec stopped while loading the specs; its stderr says why" if quitting
        raise Fatal, "rspec usage error: dry_run reports every example as passed without running it" if @config.dry_run?
      end

      def run(example)
        enter_suite
        return ["errored", "ciq: a before(:suite) hook failed, so no example runs until the next settle:\n#{@suite_error}"] if @suite_error

        enter(chain(example))
        group, (kind, exception) = @entered.find { |_, state| state }
        return broken(example, group, kind, exception) if group

        # The example may have run before in this process (ciq retries or requeues a test).
        example.instance_variable_set(:@exception, nil)
        example.metadata[:execution_result] = ::RSpec::Core::Example::ExecutionResult.new
        instance = example.example_group.new(example.inspect_output)
        example.example_group.set_ivars(instance, example.example_group.before_context_ivars)
        example.run(instance, @reporter)
        verdict(example)
      end

      def verdict(example)
        result = example.execution_result
        case result.status
        when :passed then ["passed", ""]
        when :pending then ["skipped", "#{result.pending_exception ? 'pending' : 'skipped'}: #{result.pending_message}"]
        when :failed then ["failed", failure(example)]
        else ["errored", "ciq: RSpec recorded no outcome for this example (status #{result.status.inspect})\n"]
        end
      end

      # An example under a group whose before(:context) hook failed or skipped: RSpec fails (or
      # skips) every example of that group with the hook's exception, without running it.
      def broken(example, group, kind, exception)
        if kind == :skip
          example.skip_with_exception(@reporter, exception)
          return ["skipped", "skipped: #{example.execution_result.pending_message}"]
        end
        example.fail_with_exception(@reporter, exception)
        ["errored", "ciq: a before(:context) hook of #{group.description.inspect} failed:\n#{failure(example)}"]
      end

      # As RSpec's summary prints the failure, without its number and indentation.
      def failure(example)
        presenter = ::RSpec::Core::Formatters::ExceptionPresenter::Factory.new(example).build
        lines = presenter.fully_formatted_lines(nil, ::RSpec::Core::Notifications::NullColorizer)
        lines.map(&:to_s).drop_while { |line| line.strip.empty? }.map { |line| "#{line.delete_prefix('  ')}\n" }.join
      end

      # The example's groups, outermost first.
      def chain(example)
        example.example_group.parent_groups.reverse
      end

      def common(one, other)
        one.zip(other).take_while { |a, b| a.equal?(b) }.map(&:first)
      end

      # Runs the before(:context) hooks of the groups of `groups` not entered yet, outermost
      # first, stopping under a group whose hook failed (RSpec runs nothing below it).
      def enter(groups)
        groups.drop(@entered.size).each do |group|
          break if @entered.last&.last

          @reporter.example_group_started(group)
          ::RSpec.current_scope = :before_context_hook
          state = begin
            group.run_before_context_hooks(group.new("before(:context) hook"))
            nil
          rescue ::RSpec::Core::Pending::SkipDeclaredInExample => e
            [:skip, e]
          rescue ::RSpec::Support::AllExceptionsExceptOnesWeMustNotRescue => e
            [:error, e]
          end
          @entered << [group, state]
        end
      end

      # Runs the after(:context) hooks of the entered groups that are not in `groups`, innermost
      # first; returns what failed, as RSpec reports it.
      def leave_to(groups)
        keep = common(@entered.map(&:first), groups).size
        errors = []
        while @entered.size > keep
          group, = @entered.pop
          ::RSpec.current_scope = :after_context_hook
          errors.concat(NonExampleErrors.during { group.run_after_context_hooks(group.new("after(:context) hook")) })
          @reporter.example_group_finished(group)
        end
        errors
      end

      def enter_suite
        return if @suite_up

        @suite_up = true
        ::RSpec.current_scope = :before_suite_hook
        errors = NonExampleErrors.during { suite_hooks("a `before(:suite)` hook", :@before_suite_hooks) }
        # RSpec stops the run after a failing before(:suite) hook; here ciq decides what runs.
        @world.wants_to_quit = false
        @suite_error = errors.join("\n") unless errors.empty?
      ensure
        ::RSpec.current_scope = :suite
      end

      def leave_suite
        return [] unless @suite_up

        @suite_up = false
        @suite_error = nil
        ::RSpec.current_scope = :after_suite_hook
        NonExampleErrors.during { suite_hooks("an `after(:suite)` hook", :@after_suite_hooks) }
      ensure
        ::RSpec.current_scope = :suite
      end

      # RSpec runs suite hooks only around a whole run (Configuration#with_suite_hooks); its
      # private run_suite_hooks runs one kind on its own, reporting failures as that does.
      def suite_hooks(description, hooks)
        @config.send(:run_suite_hooks, description, @config.instance_variable_get(hooks))
      end

      # A teardown that failed while tearing down what the kept test left up fails that test,
      # through the answer's `previous`, as a plain run fails the last example's hooks.
      def charge(errors)
        kept = @kept
        @kept = nil
        return nil if errors.empty?

        unless kept
          Ciq.stderr.puts "ciq: tearing down failed (no kept test to charge it to):\n#{errors.join("\n")}"
          return nil
        end
        output = "ciq: tearing down what #{kept} left up (kept up for the test that might follow it) failed:\n#{errors.join("\n")}"
        { "id" => kept, "outcome" => "errored", "output" => output }
      end
    end
  end
end
