# frozen_string_literal: true

# The gem's tests: `ruby integrations/ruby/test/all.rb` from anywhere.
Dir.glob(File.join(__dir__, "*_test.rb")).sort.each { |file| require file }
