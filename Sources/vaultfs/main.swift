import Foundation
import VaultFS

exit(VaultfsCommand.main(CommandLine.arguments))
