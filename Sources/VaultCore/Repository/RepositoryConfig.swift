import Foundation

/// `repository.json`: what kind of repository this is and how it stores chunks.
public struct RepositoryConfig: Codable, Equatable, Sendable {
    public static let currentFormat = 1
    public static let fileName = "repository.json"

    public var format: Int
    public var id: String
    public var chunkSize: Int
    public var compressionLevel: Int
    public var createdAt: String

    public init(chunkSize: Int, compressionLevel: Int) throws {
        guard chunkSize >= 64 << 10, chunkSize <= 4 << 20, chunkSize & (chunkSize - 1) == 0 else {
            throw VaultError.invalid("chunk size \(chunkSize) must be a power of two from 64K to 4M")
        }
        guard (1...19).contains(compressionLevel) else {
            throw VaultError.invalid("compression level \(compressionLevel) must be 1-19")
        }
        format = Self.currentFormat
        id = UUID().uuidString.lowercased()
        self.chunkSize = chunkSize
        self.compressionLevel = compressionLevel
        createdAt = Units.formatTime(Date())
    }

    static func load(from root: String) throws -> RepositoryConfig {
        let path = "\(root)/\(fileName)"
        guard Posix.isDirectory(root) else { throw VaultError(.notARepository, "\(root) is not a vaultfs repository (no such directory)") }
        guard Posix.exists(path) else {
            throw VaultError(.notARepository, "\(root) is not a vaultfs repository (no \(fileName); create one with 'vaultctl init')")
        }
        let config: RepositoryConfig
        do {
            config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(Posix.readFile(path)))
        } catch let error as VaultError {
            throw error
        } catch {
            throw VaultError(.notARepository, "\(path) is not a valid vaultfs repository description", cause: error)
        }
        guard config.format <= currentFormat else {
            throw VaultError(.unsupportedFormat, "\(root) uses repository format \(config.format); this vaultfs reads up to format \(currentFormat), upgrade vaultfs")
        }
        return config
    }

    func save(to root: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Posix.writeFileAtomically("\(root)/\(Self.fileName)", Array(try encoder.encode(self)) + [10])
    }
}
